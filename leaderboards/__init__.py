"""The leaderboard store: append-only Parquet result files, queries, exports and plots."""
