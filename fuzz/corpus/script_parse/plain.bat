fastboot %* getvar product 2>&1 | findstr /r /c:"^product: *piano" || echo Mismatching image and device
fastboot %* getvar product 2>&1 | findstr /r /c:"^product: *piano" || exit /B 1
fastboot %* erase boot_ab || @echo "Erase boot error" && exit /B 1
fastboot %* flash abl_ab %~dp0images/abl.elf || @echo "Flash abl error" && exit /B 1
fastboot %* flash vbmeta_ab %~dp0images/vbmeta.img || @echo "Flash vbmeta error" && exit /B 1
fastboot %* flash super %~dp0images/super.img || @echo "Flash super error" && exit /B 1
::fastboot %* flash cust %~dp0images/cust.img
fastboot %* flash boot_ab %~dp0images/boot.img || @echo "Flash boot error" && exit /B 1
fastboot %* set_active a || @echo "Set active a error" && exit /B 1
fastboot %* reboot || @echo "Reboot error" && exit /B 1
