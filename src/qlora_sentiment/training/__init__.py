# output-neutral: package marker, empty (each module is a dependency of its own)
