print("mcrelay")
