"""Personal features: favorites, reading progress, reading lists (/api/user/...).

Rows hold Calibre book ids without a foreign key into Calibre: a book that leaves the
library stays in the user's data and is listed with "available": false, never a 500.
Percentages are 0-100.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request
from pydantic import BaseModel, Field
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.responses import Response

from ..library import Library
from ..serialize import cover_urls
from ..services import services
from .deps import AccountsDep, UserDep
from .models import Favorite, Progress, ReadingList, ReadingListItem, utcnow

router = APIRouter(prefix="/api/user", tags=["user"])
BookId = Annotated[int, Path(ge=0, le=2**31 - 1)]
ListId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def _iso(d: datetime | None) -> str | None:
    return None if d is None else d.isoformat()


def current_library(request: Request) -> Library | None:
    return services(request).state.get()


def require_book(request: Request, book_id: int) -> None:
    lib = services(request).library(request)  # 503 when the library is unavailable
    if book_id not in lib.books:
        raise HTTPException(404, detail={"error": "not_found", "message": f"no book {book_id}"})


def brief(lib: Library | None, book_id: int) -> dict[str, Any]:
    b = lib.books.get(book_id) if lib is not None else None
    if lib is None or b is None:
        return {"id": book_id, "available": False, "title": None, "authors": []}
    return {
        "id": book_id,
        "available": True,
        "title": b.title,
        "authors": lib.author_names(b),
        "thumbnail_url": cover_urls(b)["thumbnail_url"],
    }


# ---------------------------------------------------------------- favorites
class FavoriteIn(BaseModel):
    book_id: Annotated[int, Field(ge=0, le=2**31 - 1)]


def favorites_of(db: Session, user_id: int, lib: Library | None) -> list[dict[str, Any]]:
    rows = db.scalars(
        select(Favorite).where(Favorite.user_id == user_id).order_by(Favorite.created_at.desc())
    )
    return [
        {"book_id": f.book_id, "added_at": _iso(f.created_at), "book": brief(lib, f.book_id)}
        for f in rows
    ]


@router.get("/favorites")
def list_favorites(request: Request, acc: AccountsDep, user: UserDep) -> list[dict[str, Any]]:
    with acc.db.session() as db:
        return favorites_of(db, user.id, current_library(request))


def add_favorite_for(acc: Any, user_id: int, book_id: int) -> None:
    try:
        with acc.db.session() as db:
            if db.get(Favorite, (user_id, book_id)) is None:
                db.add(Favorite(user_id=user_id, book_id=book_id, created_at=utcnow()))
    except IntegrityError:
        pass  # added concurrently: same outcome


@router.put("/favorites/{book_id}", status_code=204)
def put_favorite(request: Request, book_id: BookId, acc: AccountsDep, user: UserDep) -> Response:
    require_book(request, book_id)
    add_favorite_for(acc, user.id, book_id)
    return Response(status_code=204)


@router.post("/favorites", status_code=204)
def post_favorite(request: Request, body: FavoriteIn, acc: AccountsDep, user: UserDep) -> Response:
    require_book(request, body.book_id)
    add_favorite_for(acc, user.id, body.book_id)
    return Response(status_code=204)


@router.delete("/favorites/{book_id}", status_code=204)
def delete_favorite(book_id: BookId, acc: AccountsDep, user: UserDep) -> Response:
    with acc.db.session() as db:
        db.execute(delete(Favorite).where(Favorite.user_id == user.id, Favorite.book_id == book_id))
    return Response(status_code=204)


# ---------------------------------------------------------------- progress
class ProgressIn(BaseModel):
    percentage: Annotated[float, Field(ge=0, le=100)]
    location: Annotated[str | None, Field(max_length=4096, description="CFI/xpointer/page")] = None
    device: Annotated[str | None, Field(max_length=100)] = None


def progress_dict(p: Progress, lib: Library | None) -> dict[str, Any]:
    return {
        "book_id": p.book_id,
        "percentage": p.percentage,
        "location": p.location,
        "device": p.device,
        "updated_at": _iso(p.updated_at),
        "book": brief(lib, p.book_id),
    }


def save_progress(
    acc: Any, user_id: int, book_id: int, pct: float, location: str | None, device: str | None
) -> Progress:
    for _ in range(2):
        try:
            with acc.db.session() as db:
                p = db.get(Progress, (user_id, book_id))
                if p is None:
                    p = Progress(user_id=user_id, book_id=book_id)
                    db.add(p)
                p.percentage = pct
                p.location = location
                p.device = device
                p.updated_at = utcnow()
                result: Progress = p
            return result
        except IntegrityError:
            continue  # inserted concurrently: update it
    raise HTTPException(409, detail={"error": "conflict", "message": "try again"})


def progress_of(db: Session, user_id: int, lib: Library | None) -> list[dict[str, Any]]:
    rows = db.scalars(
        select(Progress).where(Progress.user_id == user_id).order_by(Progress.updated_at.desc())
    )
    return [progress_dict(p, lib) for p in rows]


@router.get("/progress")
def list_progress(request: Request, acc: AccountsDep, user: UserDep) -> list[dict[str, Any]]:
    with acc.db.session() as db:
        return progress_of(db, user.id, current_library(request))


@router.get("/progress/{book_id}")
def get_progress(
    request: Request, book_id: BookId, acc: AccountsDep, user: UserDep
) -> dict[str, Any]:
    with acc.db.session() as db:
        p = db.get(Progress, (user.id, book_id))
        if p is None:
            raise HTTPException(
                404, detail={"error": "not_found", "message": f"no progress for book {book_id}"}
            )
        return progress_dict(p, current_library(request))


@router.put("/progress/{book_id}")
def put_progress(
    request: Request, book_id: BookId, body: ProgressIn, acc: AccountsDep, user: UserDep
) -> dict[str, Any]:
    require_book(request, book_id)
    p = save_progress(acc, user.id, book_id, body.percentage, body.location, body.device)
    return progress_dict(p, current_library(request))


@router.delete("/progress/{book_id}", status_code=204)
def delete_progress(book_id: BookId, acc: AccountsDep, user: UserDep) -> Response:
    with acc.db.session() as db:
        db.execute(delete(Progress).where(Progress.user_id == user.id, Progress.book_id == book_id))
    return Response(status_code=204)


# ---------------------------------------------------------------- reading lists
ListName = Annotated[str, Field(min_length=1, max_length=200)]


class ListIn(BaseModel):
    name: ListName


class ListBookIn(BaseModel):
    book_id: Annotated[int, Field(ge=0, le=2**31 - 1)]


class ListOrder(BaseModel):
    book_ids: Annotated[list[Annotated[int, Field(ge=0, le=2**31 - 1)]], Field(max_length=10000)]


def _not_found(list_id: int) -> HTTPException:
    return HTTPException(404, detail={"error": "not_found", "message": f"no list {list_id}"})


def _own_list(db: Session, user_id: int, list_id: int) -> ReadingList:
    rl = db.get(ReadingList, list_id)
    if rl is None or rl.user_id != user_id:
        raise _not_found(list_id)  # someone else's list looks like no list
    return rl


def _name_taken() -> HTTPException:
    return HTTPException(409, detail={"error": "exists", "message": "a list with that name exists"})


def list_summaries(db: Session, user_id: int) -> list[dict[str, Any]]:
    counts = dict(
        db.execute(
            select(ReadingListItem.list_id, func.count())
            .join(ReadingList, ReadingList.id == ReadingListItem.list_id)
            .where(ReadingList.user_id == user_id)
            .group_by(ReadingListItem.list_id)
        ).all()
    )
    rows = db.scalars(
        select(ReadingList).where(ReadingList.user_id == user_id).order_by(ReadingList.name)
    )
    return [
        {
            "id": r.id,
            "name": r.name,
            "count": int(counts.get(r.id, 0)),
            "created_at": _iso(r.created_at),
            "updated_at": _iso(r.updated_at),
        }
        for r in rows
    ]


def list_detail(db: Session, rl: ReadingList, lib: Library | None) -> dict[str, Any]:
    items = db.scalars(
        select(ReadingListItem)
        .where(ReadingListItem.list_id == rl.id)
        .order_by(ReadingListItem.position, ReadingListItem.added_at)
    )
    return {
        "id": rl.id,
        "name": rl.name,
        "created_at": _iso(rl.created_at),
        "updated_at": _iso(rl.updated_at),
        "books": [
            {"book_id": i.book_id, "position": n, "book": brief(lib, i.book_id)}
            for n, i in enumerate(items)
        ],
    }


@router.get("/lists")
def get_lists(acc: AccountsDep, user: UserDep) -> list[dict[str, Any]]:
    with acc.db.session() as db:
        return list_summaries(db, user.id)


def create_list_for(acc: Any, user_id: int, name: str) -> dict[str, Any]:
    name = name.strip()
    if not name:
        raise HTTPException(422, detail={"error": "invalid_name", "message": "empty name"})
    try:
        with acc.db.session() as db:
            now = utcnow()
            rl = ReadingList(user_id=user_id, name=name, created_at=now, updated_at=now)
            db.add(rl)
            db.flush()
            return {"id": rl.id, "name": rl.name, "count": 0, "created_at": _iso(now)}
    except IntegrityError:
        raise _name_taken() from None


@router.post("/lists", status_code=201)
def create_list(body: ListIn, acc: AccountsDep, user: UserDep) -> dict[str, Any]:
    return create_list_for(acc, user.id, body.name)


@router.get("/lists/{list_id}")
def get_list(request: Request, list_id: ListId, acc: AccountsDep, user: UserDep) -> dict[str, Any]:
    with acc.db.session() as db:
        return list_detail(db, _own_list(db, user.id, list_id), current_library(request))


@router.patch("/lists/{list_id}")
def rename_list(list_id: ListId, body: ListIn, acc: AccountsDep, user: UserDep) -> dict[str, Any]:
    name = body.name.strip()
    if not name:
        raise HTTPException(422, detail={"error": "invalid_name", "message": "empty name"})
    try:
        with acc.db.session() as db:
            rl = _own_list(db, user.id, list_id)
            rl.name = name
            rl.updated_at = utcnow()
            db.flush()
            return {"id": rl.id, "name": rl.name}
    except IntegrityError:
        raise _name_taken() from None


@router.delete("/lists/{list_id}", status_code=204)
def delete_list(list_id: ListId, acc: AccountsDep, user: UserDep) -> Response:
    with acc.db.session() as db:
        rl = _own_list(db, user.id, list_id)
        db.execute(delete(ReadingListItem).where(ReadingListItem.list_id == rl.id))
        db.delete(rl)
    return Response(status_code=204)


def add_to_list(acc: Any, user_id: int, list_id: int, book_id: int) -> None:
    try:
        with acc.db.session() as db:
            rl = _own_list(db, user_id, list_id)
            if db.get(ReadingListItem, (rl.id, book_id)) is None:
                last = db.scalar(
                    select(func.max(ReadingListItem.position)).where(
                        ReadingListItem.list_id == rl.id
                    )
                )
                db.add(
                    ReadingListItem(
                        list_id=rl.id,
                        book_id=book_id,
                        position=(last if last is not None else -1) + 1,
                        added_at=utcnow(),
                    )
                )
                rl.updated_at = utcnow()
    except IntegrityError:
        pass  # added concurrently


@router.post("/lists/{list_id}/books", status_code=204)
def add_book(
    request: Request, list_id: ListId, body: ListBookIn, acc: AccountsDep, user: UserDep
) -> Response:
    require_book(request, body.book_id)
    add_to_list(acc, user.id, list_id, body.book_id)
    return Response(status_code=204)


@router.delete("/lists/{list_id}/books/{book_id}", status_code=204)
def remove_book(list_id: ListId, book_id: BookId, acc: AccountsDep, user: UserDep) -> Response:
    with acc.db.session() as db:
        rl = _own_list(db, user.id, list_id)
        db.execute(
            delete(ReadingListItem).where(
                ReadingListItem.list_id == rl.id, ReadingListItem.book_id == book_id
            )
        )
        rl.updated_at = utcnow()
    return Response(status_code=204)


@router.put("/lists/{list_id}/order")
def reorder(
    request: Request, list_id: ListId, body: ListOrder, acc: AccountsDep, user: UserDep
) -> dict[str, Any]:
    with acc.db.session() as db:
        rl = _own_list(db, user.id, list_id)
        items = {
            i.book_id: i
            for i in db.scalars(select(ReadingListItem).where(ReadingListItem.list_id == rl.id))
        }
        if sorted(body.book_ids) != sorted(items) or len(set(body.book_ids)) != len(items):
            raise HTTPException(
                422,
                detail={
                    "error": "invalid_order",
                    "message": "book_ids must list each book of the list exactly once",
                },
            )
        for pos, bid in enumerate(body.book_ids):
            items[bid].position = pos
        rl.updated_at = utcnow()
        db.flush()
        return list_detail(db, rl, current_library(request))
