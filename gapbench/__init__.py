"""gapbench: how far back can a recurrent network carry information, and why does it fail?"""
__version__ = "0.1.0"
