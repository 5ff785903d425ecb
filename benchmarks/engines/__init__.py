"""One module per engine. Each defines `Engine(threads)` with the same methods (see ort_engine.py for the list);
a method that an engine cannot run yet raises NotAvailable with the reason shown in the table."""


class NotAvailable(Exception):
    """The engine cannot run this workload (yet); str(e) is the reason printed in the table."""
