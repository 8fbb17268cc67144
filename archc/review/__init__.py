"""Reviewing routing like code: ``diff`` (two bundles, breaking changes), ``explain`` (why each
model name resolves as it does), ``golden`` (routing cases replayed against a bundle),
``golden_update`` (writing observed decisions back in place), ``impact`` (which golden decisions a
config change flips) and ``junit`` (CI reports). Imports the compiler's data, never the runtime:
decisions are replayed through a ``decide`` that the CLI injects."""
