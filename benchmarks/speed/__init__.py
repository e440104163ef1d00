"""Speed benchmarks: what the engines and modes cost, each a module with `main(argv)` writing one result JSON."""
