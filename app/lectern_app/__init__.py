"""Lectern library server."""

__version__ = "0.1.0"

# The data-schema generation, stamped on the image as org.lectern.schema-version (by
# images/build.sh). Migrations are expand/contract, so a release runs on the schema of the
# release before and after it; bump this only for a change the previous release cannot
# run on. lectern-release then restores the pre-update /data snapshot on a rollback across
# it (and keeps the data written since the update otherwise).
SCHEMA_GENERATION = 1
