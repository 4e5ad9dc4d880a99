#!/bin/bash
# Starts `kit serve` on 0.0.0.0:7860 for the domain baked into the image, logging to stdout and, when the
# volume is writable, to $KIT_LOG_DIR/kit.log. kit serve itself refuses to start without an API key and a
# UI login (KIT_API_KEY, KIT_UI_USER, KIT_UI_PASSWORD, or *_FILE secrets) unless KIT_ALLOW_NO_AUTH=1.
set -euo pipefail
if mkdir -p "${KIT_LOG_DIR:-/data/logs}" 2>/dev/null && touch "${KIT_LOG_DIR:-/data/logs}/kit.log" 2>/dev/null; then
    exec > >(tee -a "${KIT_LOG_DIR:-/data/logs}/kit.log") 2>&1
else
    echo "warning: ${KIT_LOG_DIR:-/data/logs} is not writable by uid $(id -u); logging to stdout only" >&2
fi
exec kit serve /opt/kit/domain --host 0.0.0.0 --port "${KIT_PORT:-7860}" "$@"
