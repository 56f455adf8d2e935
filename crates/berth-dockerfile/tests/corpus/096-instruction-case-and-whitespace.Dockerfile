  FROM   busybox  
	Run   echo  indented   keyword  
cOpY	a	/b
Env K=V
