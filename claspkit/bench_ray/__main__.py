from claspkit.bench import run_moved

run_moved("claspkit.bench_ray", "claspkit.bench.ray")
