"""Stage decide: requested model + conversation -> which provider serves it, and why."""
