"""Operator tools and the composition root: the `edge-bridge` command line, the importer,
backup and restore, broker credentials and the one-machine demo.

The runtime core (`edge_bridge`) imports nothing from here or from the web layer (`api`);
this package is the one place that puts the core and the web layer together.
"""
