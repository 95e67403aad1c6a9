"""Where items get scored: the embedded process pool, or RQ workers over Redis."""
