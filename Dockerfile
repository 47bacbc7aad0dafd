# colorsort in an image with nothing but the server: a static binary and an
# empty data folder. Build it with `make docker-build`, which prepares both
# in target/docker-root/ (see the Makefile) and passes VERSION from Cargo.toml.
#
# Run it read-only, without capabilities and without privilege escalation:
#   docker run -d -p 6666:6666 -v colorsort-data:/data \
#     --read-only --cap-drop ALL --security-opt no-new-privileges colorsort
FROM scratch

ARG VERSION=unknown
LABEL org.opencontainers.image.title="colorsort" \
      org.opencontainers.image.description="Sorts images by average colour into red/green/blue folders; uploads are sealed with age to the server's RSA key." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/colorsort/colorsort" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0"

COPY target/docker-root/colorsort /colorsort
# The empty /data (mode 0700). Copying its parent keeps the folder's mode;
# / itself stays root's. A new named volume mounted on /data takes this
# folder's owner and mode, so the service user can write to it.
COPY --chown=10001:10001 target/docker-root/owned/ /

USER 10001:10001
# 6666: the protocol; 9100: Prometheus metrics, served only with --metrics.
EXPOSE 6666 9100
VOLUME /data

# Generating the key on first start takes a few seconds; failures during the
# start period do not count. `ping` asks $COLORSORT_HOST, by default
# 127.0.0.1:6666: a server moved to another port with COLORSORT_LISTEN needs
# COLORSORT_HOST set to match.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["/colorsort", "ping"]

ENTRYPOINT ["/colorsort"]
CMD ["serve"]
