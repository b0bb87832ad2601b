# Charter web / worker / beat image. The same image runs every role; compose picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CHARTER_VAR_DIR=/app/var \
    STATIC_ROOT=/app/staticfiles

WORKDIR /app

# Dependencies first, so a code change does not reinstall them.
COPY requirements/base.lock requirements/base.lock
RUN pip install -r requirements/base.lock

RUN groupadd --system charter && useradd --system --gid charter --home-dir /app charter
COPY . .
# Static files are baked into the image (outside the var volume, which would hide them).
RUN SECRET_KEY=collectstatic-only CHARTER_VAR_DIR=/tmp/build-var python manage.py collectstatic --noinput -v 0 \
    && rm -rf /tmp/build-var \
    && mkdir -p /app/var \
    && chown -R charter:charter /app/var

USER charter
EXPOSE 8000
# Migrations are their own step, run with the schema owner's URL (DATABASE_OWNER_URL), which the web
# process is never given: `docker compose` runs them in its one-shot `migrate` service.
CMD ["gunicorn", "governance.wsgi", "-b", "0.0.0.0:8000", "-w", "3"]
