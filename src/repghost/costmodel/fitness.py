"""When a fitted cost model is fit for use: a constant that imports nothing, so the command line can
state it in ``--help`` without loading the fitting code."""

#: The least held-out r² for a cost model to be used. r² = 1 − MSE / variance, so the prediction's RMS
#: error is √(1 − r²) of the spread of latencies over the space: at 0.9 about a third of it. The
#: fidelity a good model reaches here is r² ≥ 0.95 (0.991 on an idle machine, benchmarks/README.md);
#: timed under heavy load the same procedure gave 0.85 (τ 0.74, MAPE 11 %), and 20 architectures
#: gave −0.76: below 0.9 the search would chase the model's errors, not latency.
MIN_HELD_OUT_R2 = 0.9
