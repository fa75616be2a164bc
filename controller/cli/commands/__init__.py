"""One module per command: its parser (``register``), the building of its settings, and ``run``.

Every module imports only argparse and :mod:`controller.cli.options` at the
top, so ``baseguard check`` starts without aiohttp, and no command imports
kopf or the kubernetes client before it runs. The heavy parts (the webhook,
the operator, the registry client) are imported inside ``run``: plain
imports, visible to the import contracts, that merely happen late.
"""
