from claspkit.bench import run_moved

run_moved("claspkit.bench_pq_scaling", "claspkit.bench.pq_scaling")
