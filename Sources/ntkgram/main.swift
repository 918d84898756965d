print("ntkgram")
