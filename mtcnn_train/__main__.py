from mtcnn_train.cli import main

main()
