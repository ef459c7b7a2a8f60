"""Small shared utilities: seeding, distributed helpers, atomic file IO."""
