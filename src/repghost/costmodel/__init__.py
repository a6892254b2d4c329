"""The latency cost model of MobileDets / TuNAS: a search space on MobileDet-CPU's skeleton, timing of
sampled architectures on this machine, and a linear model on TuNAS's one-hot features."""
