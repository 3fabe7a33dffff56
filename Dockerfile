# One image for web, worker and beat (see docker-compose.yml).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN DATABASE_URL=postgresql://build@localhost/build REDIS_URL=redis://localhost DEBUG=false \
    SECRET_KEY=build-only-not-a-secret-build-only-not-a-secret-xyz python manage.py collectstatic --noinput
RUN useradd --create-home saasops
USER saasops
EXPOSE 8000
CMD ["python", "-m", "saasops.serve"]
