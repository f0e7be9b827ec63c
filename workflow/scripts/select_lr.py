"""Rule select_lr: keep the learning rate whose fine-tune scored best on val."""

import pandas as pd

from deepauc.atomic import copy_file, write_csv
from deepauc.diagnostics import choose_rate, rate_of, rate_table
from deepauc.jobs.logs import logged_to

rates, inputs, output = snakemake.params.rates, snakemake.input, snakemake.output
with logged_to(snakemake.log[0]):
    runs = [pd.read_csv(path) for path in inputs.histories]
    # A run at the first seed's choice (label "chosen") reads its rate from its history.
    rates = [rate_of(label, history) for label, history in zip(rates, runs, strict=True)]
    histories = dict(zip(rates, runs, strict=True))
    chosen = rates.index(choose_rate(histories))
    copy_file(inputs.models[chosen], output.model)
    write_csv(histories[rates[chosen]], output.history)
    write_csv(rate_table(histories), output.selection)
