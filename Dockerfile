# dkv container image.
#
# There is no container registry on the build machines, so nothing can be pulled: the image
# starts FROM scratch and holds one statically linked binary. Build the binary first:
#
#     scripts/build-static.sh          # or scripts/compose-up.sh N, which does both steps
#     docker build -t dkv:latest .
#
# No "# syntax=" line on purpose: it would make BuildKit pull a frontend image.
# The image has no shell and no curl; healthchecks call `/dkv health --url ...`.
FROM scratch
# Lets scripts/compose-test.sh prune this image's superseded builds, and nothing else.
LABEL org.opencontainers.image.title="dkv"
COPY target/x86_64-unknown-linux-gnu/release/dkv /dkv
ENTRYPOINT ["/dkv"]
CMD ["--help"]
