# The image every Airflow container of docker-compose.yaml runs: the official Airflow image
# plus this project's pinned runtime requirements and the `grading` package. No test or lint
# tool: requirements-dev.txt is not installed (nor in the build context, see .dockerignore).
#
#   docker compose build          (or: docker build -t customer-grading-airflow .)
#
# The project is laid out under /opt/airflow (= AIRFLOW_HOME) as in the repository: dags/,
# plugins/grading/ (installed editable, so the ./plugins bind mount of docker-compose.yaml
# takes effect without a rebuild) and include/. Without the mounts the baked-in copies run.
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_IMAGE}

ENV GRADING_INCLUDE_DIR=/opt/airflow/include \
    GRADING_HOME=/opt/airflow/grading-home \
    SCARF_ANALYTICS=false \
    GX_ANALYTICS_ENABLED=False \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Dependencies first, so editing the code does not reinstall them. requirements.txt pins
# apache-airflow==3.3.2 itself, which keeps pip from moving the image's Airflow; the lock
# constraints.txt (checked in, generated from the pins by scripts/lock.py) holds every
# transitive dependency to the version the tests ran with.
COPY --chown=airflow:0 requirements.txt constraints.txt /tmp/
RUN pip install --no-cache-dir -r /tmp/requirements.txt -c /tmp/constraints.txt

COPY --chown=airflow:0 pyproject.toml README.md /opt/airflow/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
COPY --chown=airflow:0 include/ /opt/airflow/include/
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
RUN pip install --no-cache-dir --no-deps -e /opt/airflow \
    && mkdir -p /opt/airflow/grading-home /opt/airflow/auth \
    && python -c "import grading.pipeline, grading.settings as s; print('grading include dir:', s.include_dir())"
