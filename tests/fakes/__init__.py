"""In-repo fakes of cloud services, built on the providers' own message classes."""
