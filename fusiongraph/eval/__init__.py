"""Offline evaluation: the replay bench, judge-eval, calibration, the live eval and question sets."""
