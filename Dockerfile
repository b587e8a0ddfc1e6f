# dkv container image.
#
# There is no container registry on the build machines, so nothing can be pulled: the image
# starts FROM scratch and holds one statically linked binary, which no build stage here could
# compile (there is no image with a Rust toolchain to start one from). Build the binary first:
#
#     scripts/build-static.sh          # or scripts/compose-up.sh N, which does both steps
#     docker build -t dkv:latest .
#
# scripts/build-static.sh leaves a copy of the binary in a directory named after what to do
# when it is missing: `docker build` or `docker compose up --build` on a fresh clone stops at
# the COPY with "stat target/run-scripts-build-static.sh-first/dkv: file does not exist".
#
# No "# syntax=" line on purpose: it would make BuildKit pull a frontend image.
# The image has no shell and no curl; healthchecks call `/dkv health --url ...`.
FROM scratch
# Lets scripts/compose-test.sh prune this image's superseded builds, and nothing else.
LABEL org.opencontainers.image.title="dkv"
COPY target/run-scripts-build-static.sh-first/dkv /dkv
ENTRYPOINT ["/dkv"]
CMD ["--help"]
