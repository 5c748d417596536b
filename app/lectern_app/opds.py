"""OPDS 1.2 catalog (placeholder until step 3)."""

from fastapi import APIRouter

router = APIRouter(prefix="/opds")
