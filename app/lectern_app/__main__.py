"""Entry point: `python -m lectern_app` serves the library."""


def main() -> None:
    raise SystemExit("lectern_app: the library server is not built yet (issue 3)")


if __name__ == "__main__":
    main()
