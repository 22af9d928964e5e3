fastboot $* getvar product 2>&1 | grep "^product: *piano"
if [ $? -ne 0  ] ; then echo "Mismatching image and device"; exit 1; fi
rm -rf $HOME
