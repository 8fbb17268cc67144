"""Who may call and how often: ``auth`` (gateway keys, the exposure rule for open listeners) and
``ratelimit/`` (per-key and per-route limits, in memory or shared through Redis)."""
