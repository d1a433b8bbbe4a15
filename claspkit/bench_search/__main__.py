from claspkit.bench import run_moved

run_moved("claspkit.bench_search", "claspkit.bench.search")
