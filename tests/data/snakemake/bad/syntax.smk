rule all:
    input "b.txt"
