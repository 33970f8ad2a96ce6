#!/usr/bin/env bash
# Refresh the Swagger UI and ReDoc files that /docs and /redoc serve from the installed package
# (state-manager/src/exosphere_server/api/docs_assets/), so the pages work offline and behind a strict
# firewall. They come from the npm registry, at the versions below; commit what this changes.
#   bash scripts/vendor-api-docs.sh
set -euo pipefail
SWAGGER_UI=5.35.0  # swagger-ui-dist: OpenAPI 3.1 (what FastAPI writes) needs Swagger UI 5
REDOC=2.5.4
REPO="$(cd "$(dirname "$0")/.." && pwd)"
ASSETS="$REPO/state-manager/src/exosphere_server/api/docs_assets"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "swagger-ui-dist@$SWAGGER_UI" "redoc@$REDOC" >/dev/null
mkdir swagger redoc
tar xzf "swagger-ui-dist-$SWAGGER_UI.tgz" -C swagger
tar xzf "redoc-$REDOC.tgz" -C redoc
rm -rf "$ASSETS" && mkdir -p "$ASSETS"
cp swagger/package/swagger-ui-bundle.js swagger/package/swagger-ui.css swagger/package/favicon-32x32.png "$ASSETS/"
cp swagger/package/LICENSE "$ASSETS/swagger-ui.LICENSE"
cp swagger/package/NOTICE "$ASSETS/swagger-ui.NOTICE"
cp swagger/package/swagger-ui-bundle.js.LICENSE.txt "$ASSETS/"
cp redoc/package/bundles/redoc.standalone.js redoc/package/bundles/redoc.standalone.js.LICENSE.txt "$ASSETS/"
cp redoc/package/LICENSE "$ASSETS/redoc.LICENSE"
printf 'swagger-ui-dist %s (Apache-2.0)\nredoc %s (MIT)\n' "$SWAGGER_UI" "$REDOC" > "$ASSETS/VERSIONS"
# The bundles end with a source map comment; the maps are not shipped, so browsers must not ask for them.
sed -i '/^\/\/# sourceMappingURL=/d' "$ASSETS/swagger-ui-bundle.js" "$ASSETS/redoc.standalone.js"
sed -i 's|/\*# sourceMappingURL=[^*]*\*/||' "$ASSETS/swagger-ui.css"
# ReDoc's "API docs by Redocly" footer loads its logo from Redocly's CDN: point it at our own favicon.
sed -i 's|https://cdn.redoc.ly/redoc/logo-mini.svg|/docs/assets/favicon-32x32.png|g' "$ASSETS/redoc.standalone.js"
if grep -l 'https://cdn' "$ASSETS"/*.js "$ASSETS"/*.css; then echo "a vendored file still loads from a CDN" >&2; exit 1; fi
echo "vendored into $ASSETS:"; ls -la "$ASSETS"
