"""One module per ``wal-g`` command.

Each module ``walg.commands.<name>`` (the command name with ``-`` spelled ``_``) provides
``run(args: argparse.Namespace, settings: walg.config.Settings) -> int``. ``walg.cli`` declares
the arguments and imports a command's module only when that command runs, so a module may
import what it needs at its top; nothing here may import heavy libraries.

A command raises :class:`walg.errors.WalgError` subclasses for failures; it never prints
``ERROR:`` lines or calls ``sys.exit`` itself.
"""

from __future__ import annotations
