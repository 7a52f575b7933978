DROP TABLE allow_list;
DROP TABLE ip_bans;
