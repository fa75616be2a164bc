ARG PYTHON=3.9
FROM python:${PYTHON}-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1

FROM node:16 AS assets
WORKDIR /web
COPY web/ .
RUN npm ci && npm run build

FROM base AS final
COPY --from=assets /web/dist /app/static
COPY app/ /app
CMD ["python", "-m", "app"]
