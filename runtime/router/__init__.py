"""Preference routing with Arch-Router: prompt (pure), backend protocol, CTranslate2 backend, service."""
