FROM localhost:5000/team/app:1.0
