"""Using saved runs: inspect, evaluate, predict, export."""
