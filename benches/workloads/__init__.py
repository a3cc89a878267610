"""Training workloads shared by the benchmarks, ``examples/`` and the tests, one per file.

* ``diloco_language_model`` -- a small transformer learning a generated Markov language,
  with an exact entropy floor (DiLoCo's quality tests, benchmark and demo);
* ``diloco_trainers``, ``diloco_workers`` -- each low-communication method as one spawned
  worker trains with it, and the pool of such workers;
* ``optim_drop_muon`` -- Drop-Muon against Muon on a digits CNN;
* ``schedule_adadagrad`` -- AdAdaGrad against fixed-batch AdaGrad on digits;
* ``schedule_adadagrad_ddp`` -- the same data-parallel on 4 Gloo ranks, a CNN on 16 x 16
  digits, to a held-out loss;
* ``coreset_rs2`` -- RS2 against full-data training on digits, to a test accuracy;
* ``steps_digits`` -- a fully convolutional flow on digits at 16 x 16 and 8 x 8 and a
  digits classifier for a Frechet distance, both shipped as weights: the BOSS table,
  straightening and Bottleneck Sampling on images;
* ``shaped_link`` -- not a workload but the slow link they can run on: a network namespace
  whose loopback (or each peer's veth) is rate-limited by ``tc``'s tbf (needs root);
* ``machine`` -- the CPU name every benchmark reports.

They need torch (and scikit-learn for the digits); importing this package imports none.
"""
