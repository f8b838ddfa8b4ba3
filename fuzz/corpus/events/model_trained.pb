
churnj-1