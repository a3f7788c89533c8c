"""Trial runs: whole commands run end to end, to learn whether a machine, a schedule or the live demo behaves.

- :mod:`~plinknet.trials.device_check`: every GPU figure in one short call (``make gpu-check``);
- :mod:`~plinknet.trials.paper_rehearsal`: ``make paper`` from data to verdict on the CPU, with a worker killed and
  the run resumed (``make paper-rehearsal``);
- :mod:`~plinknet.trials.scale_rehearsal`: Inria-size data through every phase on the CPU (``make rehearsal``);
- :mod:`~plinknet.trials.data_passes`: how many times ``make paper`` reads the data before training
  (``make data-passes``);
- :mod:`~plinknet.trials.demo_stability`: how far the live demo's trained numbers move between runs and
  thread counts (``make stability``).

Each takes the paths it reads and writes as arguments (the Makefile passes them).
"""
