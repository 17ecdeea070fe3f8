"""Sub-commands of ``newsarchive`` beyond crawl/demo; each module has
``register(subparsers)`` and is listed in ``crawler.cli.COMMAND_MODULES``."""
