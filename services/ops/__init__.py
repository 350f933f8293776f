"""Operations: the local multi-region sandbox and the processes it runs (later: the synthetic
probe and failover automation)."""
