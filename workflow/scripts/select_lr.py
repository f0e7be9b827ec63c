"""Rules select_lr and search_rates: the rate table of the rates a fine-tune ran, and (select_lr)
the model of the rate whose fine-tune scored best on val."""

import pandas as pd

from deepauc.atomic import copy_file, write_csv
from deepauc.config.rates import rate_of
from deepauc.evaluation.diagnostics import choose_rate, rate_table
from deepauc.jobs.logs import logged_to

inputs, output = snakemake.input, snakemake.output
with logged_to(snakemake.log[0]):
    labels, rounds = zip(*snakemake.params.rates, strict=True)
    runs = [pd.read_csv(path) for path in inputs.histories]
    # A run at the first seed's choice (label "chosen") reads its rate from its history.
    rates = [rate_of(label, history) for label, history in zip(labels, runs, strict=True)]
    histories = dict(zip(rates, runs, strict=True))
    table = rate_table(histories, dict(zip(rates, rounds, strict=True)))
    if snakemake.rule == "select_lr":  # search_rates writes the table only
        chosen = rates.index(choose_rate(histories))
        copy_file(inputs.models[chosen], output.model)
        write_csv(histories[rates[chosen]], output.history)
        write_csv(table, output.selection)
    else:
        write_csv(table, output[0])
