"""Stage modules: the only code that knows the data/ and exp/ layouts."""
