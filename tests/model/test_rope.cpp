// placeholder: being written this session (issue 3)
