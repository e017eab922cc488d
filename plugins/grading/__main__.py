from grading.cli import main

# Airflow imports every module under plugins/ when it starts; only run as `python -m grading`.
if __name__ == "__main__":
    raise SystemExit(main())
