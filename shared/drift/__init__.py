"""Drift: what the model is fed now against what it was trained on, measured during the join.

profile   the column profile (bins, categories, counts) and its JSON form; profiles merge
stream    the scored file's profile, taken from the join's blocks (numpy; imported only when drift is on)
compare   PSI and Jensen-Shannon distance per feature, the verdict, the report and its summary
build     a reference profile from the training data (`python -m shared.profile build`)
"""
