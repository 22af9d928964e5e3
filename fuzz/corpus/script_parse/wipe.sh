fastboot $* getvar product 2>&1 | grep "^product: *piano"
if [ $? -ne 0  ] ; then echo "Mismatching image and device"; exit 1; fi
fastboot $* erase boot_ab
if [ $? -ne 0 ] ; then echo "Erase boot error"; exit 1; fi
fastboot $* flash abl_ab `dirname $0`/images/abl.elf
if [ $? -ne 0 ] ; then echo "Flash abl error"; exit 1; fi
fastboot $* flash vbmeta_ab `dirname $0`/images/vbmeta.img
if [ $? -ne 0 ] ; then echo "Flash vbmeta error"; exit 1; fi
fastboot $* flash super `dirname $0`/images/super.img
if [ $? -ne 0 ] ; then echo "Flash super error"; exit 1; fi
#fastboot $* flash cust `dirname $0`/images/cust.img
fastboot $* flash boot_ab `dirname $0`/images/boot.img
if [ $? -ne 0 ] ; then echo "Flash boot error"; exit 1; fi
fastboot $* erase userdata
fastboot $* erase metadata
fastboot $* set_active a
if [ $? -ne 0 ] ; then echo "Set active a error"; exit 1; fi
fastboot $* reboot
if [ $? -ne 0 ] ; then echo "Reboot error"; exit 1; fi
