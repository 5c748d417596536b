# docker buildx bake definition for the Lectern app image (users' machines, public CI).
# Called by images/build.sh (`make image`) when buildx exists; build.sh stages CONTEXT
# (Dockerfile, requirements.txt exported from uv.lock, the app wheel, build-ca.pem) and
# exports the variables below. Without buildx (Debian's docker.io 20.10) build.sh builds
# each platform with the legacy builder and assembles the same manifest list itself.
#
#   CONTEXT=.cache/image/context REGISTRY=ghcr.io/org/lectern TAGS_CSV=0.1.0,0.1,sha-abc,edge \
#     docker buildx bake -f images/docker-bake.hcl --push app

variable "CONTEXT"    { default = ".cache/image/context" }
variable "REGISTRY"   { default = "127.0.0.1:5000/lectern/app" }
variable "TAGS_CSV"   { default = "edge" }
variable "PLATFORMS"  { default = "linux/amd64,linux/arm64" }
variable "BASE_IMAGE" { default = "python:3.11-slim-bookworm" }
variable "VERSION"    { default = "0.0.0" }
variable "REVISION"   { default = "unknown" }
variable "CREATED"    { default = "1970-01-01T00:00:00Z" }
variable "SOURCE"     { default = "https://github.com/lectern/lectern" }
variable "SCHEMA"     { default = "0" }
# BuildKit honours SOURCE_DATE_EPOCH for layer timestamps and the image config (reproducible)
variable "SOURCE_DATE_EPOCH" { default = "0" }

group "default" {
  targets = ["app"]
}

target "app" {
  context    = CONTEXT
  dockerfile = "Dockerfile"
  platforms  = split(",", PLATFORMS)
  tags       = [for t in split(",", TAGS_CSV) : "${REGISTRY}:${t}"]
  args = {
    BASE_IMAGE        = BASE_IMAGE
    VERSION           = VERSION
    REVISION          = REVISION
    CREATED           = CREATED
    SOURCE            = SOURCE
    SCHEMA            = SCHEMA
    SOURCE_DATE_EPOCH = SOURCE_DATE_EPOCH
  }
  labels = {
    "org.opencontainers.image.version"  = VERSION
    "org.opencontainers.image.revision" = REVISION
    "org.opencontainers.image.created"  = CREATED
    "org.opencontainers.image.source"   = SOURCE
    "org.lectern.schema-version"        = SCHEMA
  }
  output = ["type=image,oci-mediatypes=true,rewrite-timestamp=true"]
}
