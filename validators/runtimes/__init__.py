"""The runtimes that evaluate a converted model file (PMML here), as plain classes without Prefect."""
